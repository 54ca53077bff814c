from masar.cli import main

raise SystemExit(main())
