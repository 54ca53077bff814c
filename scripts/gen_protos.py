"""Generate the protobuf and gRPC code in masar/v1 from protos/masar/v1.

One script, used by `make protos` and, with --check, by CI: it regenerates into
a temporary tree and fails when the committed code differs from it.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = Path("masar") / "v1"


def generate(out_root: Path) -> None:
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / OUT_PACKAGE).glob("*.proto")
    )
    if not protos:
        sys.exit("no .proto files under protos/masar/v1")
    include = Path(protoc.__file__).parent / "_proto"
    # protoc finds the mypy-protobuf plugins on PATH: use this interpreter's.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    (out_root / OUT_PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    (out_root / OUT_PACKAGE / "__init__.py").write_text(
        '"""Generated code; never edit by hand (scripts/gen_protos.py)."""\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if masar/v1 is stale")
    args = parser.parse_args()
    if not args.check:
        # Generate aside, then swap files in: importers never see a half-empty package.
        target = ROOT / OUT_PACKAGE
        with tempfile.TemporaryDirectory(dir=ROOT, prefix=".protos-") as tmp:
            generate(Path(tmp))
            fresh = Path(tmp) / OUT_PACKAGE
            for old in target.glob("*_pb2*.py*"):
                if not (fresh / old.name).exists():
                    old.unlink()
            for new in fresh.iterdir():
                if new.is_file():
                    os.replace(new, target / new.name)
        print(f"generated {OUT_PACKAGE}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, committed = Path(tmp) / OUT_PACKAGE, ROOT / OUT_PACKAGE
        names = {p.name for p in fresh.iterdir()} | {
            p.name for p in committed.iterdir() if p.suffix in {".py", ".pyi"}
        }
        stale = sorted(
            n
            for n in names
            if not (fresh / n).exists()
            or not (committed / n).exists()
            or not filecmp.cmp(fresh / n, committed / n, shallow=False)
        )
        if stale:
            sys.exit("generated protobuf code is stale; run `make protos`: " + ", ".join(stale))
        print("generated protobuf code is up to date")


if __name__ == "__main__":
    main()
