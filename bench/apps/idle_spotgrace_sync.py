import spotgrace

with spotgrace.graceful() as grace:
    print("ready", flush=True)
    grace.wait()
