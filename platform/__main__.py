from atoll.cli import app

app(prog_name="atoll")
