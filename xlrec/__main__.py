from xlrec.cli import main

raise SystemExit(main())
