"""``python -m brand_adapters.desk hash-password``: make a ``password_hash`` for the desk agents file."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from brand_adapters.desk.agents import Agent, hash_agent_password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m brand_adapters.desk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("hash-password", help="print a password hash, or a whole agents-file entry")
    make.add_argument("--login", help="with --name: print a whole entry of the agents file")
    make.add_argument("--name", help="the agent's name as members see it (e.g. Léa)")
    make.add_argument("--stdin", action="store_true", help="read the password from standard input")
    args = parser.parse_args(argv)
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Mot de passe · Password: ")
        if getpass.getpass("Encore · Again: ") != password:
            print("les mots de passe diffèrent · passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("mot de passe vide · empty password", file=sys.stderr)
        return 1
    hashed = hash_agent_password(password)
    if args.login and args.name:
        entry = Agent(login=args.login, name=args.name, password_hash=hashed)
        print(json.dumps(entry.model_dump(), ensure_ascii=False))
    else:
        print(hashed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
