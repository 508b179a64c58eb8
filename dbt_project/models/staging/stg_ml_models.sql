select model_name, version, run_id, training_data_hash, status, metrics, gate, created_at, promoted_at
from {{ source('platform', 'ml_models') }}
