"""Run inside the Feast venv by tests/integration/test_feast.py (not a test): point-in-time historical features
for the entity rows in argv[1] (parquet: symbol, event_timestamp) through the repo's feature service, and the
online features of argv[3]'s symbols; writes argv[2] (parquet) and argv[4] (JSON)."""

from __future__ import annotations

import json
import sys

import pandas as pd
from feast import FeatureStore

entity_path, historical_path, symbols, online_path = sys.argv[1:5]
store = FeatureStore(repo_path=".")
(service,) = store.list_feature_services()
entity_df = pd.read_parquet(entity_path)
historical = store.get_historical_features(entity_df=entity_df, features=service).to_df()
historical["symbol"] = historical["symbol"].astype(str)
historical.to_parquet(historical_path)
online = store.get_online_features(features=service, entity_rows=[{"symbol": s} for s in symbols.split(",")])
with open(online_path, "w") as out:
    json.dump({"service": service.name, "tags": dict(service.tags), "rows": online.to_dict()}, out)
