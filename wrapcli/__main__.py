from wrapcli.cli import app

app(prog_name="wrapcli")
