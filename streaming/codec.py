"""A compact faust codec: orjson (about 5x faster than the stdlib json codec faust uses by default).

Registered under the name ``orjson``; records and topics of the app name it as their serializer.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs


class OrjsonCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        # OPT_PASSTHROUGH_DATACLASS off: faust hands us plain dicts already (Record.to_representation)
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def register() -> None:
    """Idempotent: faust keeps a process-wide codec registry."""
    if "orjson" not in codecs.codecs:
        codecs.register("orjson", OrjsonCodec())


register()
