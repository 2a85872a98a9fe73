from sagehost.cli import main

raise SystemExit(main())
