"""A stand-in for a stage under glm-serve, for tests where the real program
is absent or must be controlled (glm-gateway, before it exists on a branch).

It speaks the supervisor protocol only: READY=1 to $NOTIFY_SOCKET (one
sd_notify datagram), WATCHDOG=1 every quarter of $WATCHDOG_USEC when that is
set, and on SIGTERM STOPPING=1 and exit 0. Its command line (the stage's
arguments glm-serve passed) is written as JSON to $GLM_STANDIN_ARGS when set.
The test itself then plays the gateway's part on the ipc:// endpoints.

    --no-ready     never send READY=1 (a stage that hangs while starting)
    --no-watchdog  never send WATCHDOG=1 (a stage that hangs while serving)
    --exit N       exit with status N at once, before READY (a refused flag)
    --forward      a stage that forwards every message from its --in (binds)
                   to its --out (connects) unchanged, e.g. in glm-detok's place
                   to see the engine's own `tokens` at the end of the pipeline
"""
import json
import os
import signal
import socket
import sys
import time


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(state.encode(), "\0" + path[1:] if path.startswith("@") else path)
    finally:
        s.close()


def main():
    argv = sys.argv[1:]
    out = os.environ.get("GLM_STANDIN_ARGS")
    if out:
        with open(out, "w") as f:
            json.dump(argv, f)
    if "--exit" in argv:
        print("serve_standin: exiting as asked", file=sys.stderr)
        sys.exit(int(argv[argv.index("--exit") + 1]))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # what glm-gateway does with it: fail the requests in flight (a stage restarted)
    signal.signal(signal.SIGUSR1, lambda *_: print("serve_standin: SIGUSR1 (a stage restarted)", file=sys.stderr,
                                                   flush=True))
    fwd = None
    if "--forward" in argv:
        import zmq
        ctx = zmq.Context()
        src = ctx.socket(zmq.PULL)
        src.bind(argv[argv.index("--in") + 1])
        dst = ctx.socket(zmq.PUSH)
        dst.connect(argv[argv.index("--out") + 1])
        fwd = (src, dst)
    if "--no-ready" not in argv:
        notify("READY=1")
    wd = int(os.environ.get("WATCHDOG_USEC", "0")) / 4e6
    while not stop:
        if fwd:
            # drain what has arrived, then wait a little: a stop signal lands between polls
            if fwd[0].poll(50):
                fwd[1].send(fwd[0].recv())
                continue
        else:
            time.sleep(wd if wd > 0 else 0.05)
        if wd > 0 and "--no-watchdog" not in argv:
            notify("WATCHDOG=1")
    notify("STOPPING=1")
    if fwd:   # what already arrived still goes on, as a real stage drains
        while fwd[0].poll(0):
            fwd[1].send(fwd[0].recv())
        fwd[1].close(linger=5000)
        fwd[0].close(linger=0)


if __name__ == "__main__":
    main()
