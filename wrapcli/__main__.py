from wrapcli.cli import run

run()
