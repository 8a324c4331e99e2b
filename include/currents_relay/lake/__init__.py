"""The Parquet lake: one root URL holding every hour's versions, ledgers, leases and reports.

| path | holds |
| --- | --- |
| `manifests/hour=<h>.json` | the hour's commit point: its live version, files, counts, report |
| `events/event_type=<t>/hour=<h>/part-<version>.parquet` | valid, deduplicated events (zstd) |
| `quarantine/hour=<h>/part-<version>.parquet` | rejected rows and unreadable files, with reasons |
| `validation/hour=<h>/<version>.json` | suite results: counts and row positions, never values |
| `deliveries/`, `dead_letter/` | each destination's ledger (`delivery.ledger`) |
| `reports/hour=<h>/<destination>.json` | what the latest push of the hour to a destination did |
| `reports/hour=<h>.json` | the hour's report: the manifest's and every destination's, merged |
| `_leases/hour=<h>/<name>.json` | who is processing or pushing the hour now |

Read an hour through its manifest (`versions.live_files`, `currents-relay lake files`): a
folder can also hold a replaced version (for a grace period) or a version being written.
"""

from currents_relay.lake.storage import Lake

__all__ = ["Lake"]
