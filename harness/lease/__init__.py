"""Board leases: two controllers, pytest processes or xdist workers never share a board (see `acquire`), and
the store that keeps them also keeps each board's quarantine and run record."""

from harness.lease.acquire import Lease, acquire, holder, store_of
from harness.lease.files import LEASE_DIR_ENV, FileLeaseStore, default_lease_dir
from harness.lease.store import BoardRecord, Holder, LeaseStore, Quarantine

__all__ = ["LEASE_DIR_ENV", "BoardRecord", "FileLeaseStore", "Holder", "Lease", "LeaseStore", "Quarantine",
           "acquire", "default_lease_dir", "holder", "store_of"]
