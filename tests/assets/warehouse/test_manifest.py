"""The dbt manifest behind the warehouse assets follows the project: a model newer than it (a pull, an edit)
re-parses, so `dbt build` never runs models the asset graph does not know."""

from __future__ import annotations

import json
import os
import time


def test_a_stale_manifest_is_parsed_again():
    from assets.warehouse import dbt_project, ensure_manifest

    path = ensure_manifest()
    old = time.time() - 10 * 86_400
    os.utime(path, (old, old))  # older than every model file
    assert ensure_manifest() == path
    assert path.stat().st_mtime > old + 86_400
    models = {n.split(".")[-1] for n in json.loads(path.read_text())["nodes"] if n.startswith("model.")}
    on_disk = {f.stem for f in (dbt_project.project_dir / "models").rglob("*.sql")}
    assert on_disk <= models
    # fresh: no second parse
    mtime = path.stat().st_mtime
    assert ensure_manifest() == path and path.stat().st_mtime == mtime
