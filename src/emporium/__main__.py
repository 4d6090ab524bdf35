from emporium.cli import app

app(prog_name="emporium")
