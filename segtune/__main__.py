from segtune.cli import main

raise SystemExit(main())
