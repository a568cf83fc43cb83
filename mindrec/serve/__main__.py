"""``python -m mindrec.serve DIR [--port P] [--poll-s S] [--ready-file F]``."""
from mindrec.serve.command import main

if __name__ == "__main__":
    main()
