"""`python -m services.network`: the network service on its port (default 50055)."""

from masar.platform.process import run_sector_main
from services.network.app import MIGRATIONS_DIR, build_components

if __name__ == "__main__":
    run_sector_main("network", build_components, MIGRATIONS_DIR)
