"""`python -m heddle.server`: the same as `heddle serve`."""

from heddle.server.cli import serve

if __name__ == "__main__":
    serve(prog_name="heddle serve")
