"""Runs SQL statements on chDB, an embedded current ClickHouse, and prints each one's answer.

Reads a JSON list of statements on stdin; prints a JSON list with, for each statement, its
output as text (TabSeparated for queries, empty for DDL and inserts). The first statement that
fails ends the run with its error on stderr and exit status 1.
"""

import json
import sys
import tempfile

import chdb.session


def main() -> int:
    statements = json.load(sys.stdin)
    answers = []
    with tempfile.TemporaryDirectory() as path:
        session = chdb.session.Session(path)
        for statement in statements:
            try:
                result = session.query(statement, "TabSeparated")
            except Exception as error:  # chdb raises its own error types
                print(f"{error}\n--- in ---\n{statement}", file=sys.stderr)
                return 1
            answers.append(result.bytes().decode() if result is not None else "")
        session.close()
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
