from taskmill.cli import run

run()
