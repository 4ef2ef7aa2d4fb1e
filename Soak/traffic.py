#!/usr/bin/env python3
"""Soak traffic for udpd: steady UDP echo streams (direct and through a forward service) that must lose nothing, TCP connection churn, bursts of
malformed datagrams, garbage TCP and garbage control requests. Runs for --seconds, then prints one JSON line.
Traffic goes only to the address given (loopback, or an address inside the soak's own network namespace)."""
import argparse, json, os, random, socket, threading, time

def steady(args, stats, stop, port=None, prefix="udp"):
    """Numbered datagrams, at most 32 unanswered; one unanswered for 2 s is lost."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((args.host, port or args.echo))
    s.settimeout(2.0)
    sent = answered = lost = 0
    while not stop.is_set():
        while sent - answered - lost < 32:
            s.send(b"%d" % sent)
            sent += 1
        try:
            s.recv(64)
            answered += 1
        except socket.timeout:
            lost += sent - answered - lost
    s.settimeout(2.0)
    while sent - answered - lost > 0:
        try:
            s.recv(64)
            answered += 1
        except socket.timeout:
            lost += sent - answered - lost
    stats.update({prefix + "_sent": sent, prefix + "_answered": answered, prefix + "_lost": lost})

def forwarded(args, stats, stop):
    """The same steady stream through a forward service whose upstream is the echo service."""
    if args.forward:
        steady(args, stats, stop, port=args.forward, prefix="fwd")

def tcp_churn(args, stats, stop):
    ok = failed = 0
    while not stop.is_set():
        try:
            with socket.create_connection((args.host, args.echo), timeout=2) as c:
                c.sendall(b"churn\n")
                got = b""
                while len(got) < 6:
                    part = c.recv(64)
                    if not part:
                        break
                    got += part
                ok += got == b"churn\n"
                failed += got != b"churn\n"
        except OSError:
            failed += 1
        time.sleep(0.005)
    stats.update(tcp_ok=ok, tcp_failed=failed)

def malformed(args, stats, stop):
    """Bursts of random datagrams (0 to 9000 bytes) to both UDP ports."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    while not stop.is_set():
        # Mostly at discard; a few at echo, whose socket the steady stream shares (a burst that fills the
        # kernel's receive buffer would be the kernel's loss, not udpd's).
        for index in range(110):
            size = random.choice([0, 1, 7, 64, 512, 1400, random.randrange(0, 9000)])
            port = args.echo if index % 11 == 0 else args.discard
            try:
                s.sendto(os.urandom(size), (args.host, port))
                sent += 1
            except OSError:
                pass
        time.sleep(0.1)
    stats.update(malformed_datagrams=sent)

def garbage_tcp(args, stats, stop):
    n = 0
    while not stop.is_set():
        try:
            with socket.create_connection((args.host, random.choice((args.echo, args.discard))), timeout=1) as c:
                c.sendall(os.urandom(random.randrange(1, 4096)))
                if random.random() < 0.5:
                    c.shutdown(socket.SHUT_WR)
            n += 1
        except OSError:
            pass
        time.sleep(0.01)
    stats.update(garbage_tcp=n)

def garbage_control(args, stats, stop):
    junk = [b"\n", b"{}\n", b'{"command":"nope"}\n', b"\xff\xfe\x00\n", b"x" * 70000 + b"\n", b'{"command":']
    n = 0
    while not stop.is_set():
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(1)
            c.connect(args.control)
            c.sendall(random.choice(junk))
            if random.random() < 0.3:
                c.recv(4096)
            c.close()
            n += 1
        except OSError:
            pass
        time.sleep(0.02)
    stats.update(garbage_control=n)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--echo", type=int, required=True)
    p.add_argument("--discard", type=int, required=True)
    p.add_argument("--forward", type=int, default=0)
    p.add_argument("--control", required=True)
    p.add_argument("--seconds", type=float, required=True)
    args = p.parse_args()
    stop = threading.Event()
    stats = {}
    threads = [threading.Thread(target=f, args=(args, stats, stop))
               for f in (steady, forwarded, tcp_churn, malformed, garbage_tcp, garbage_control)]
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    print(json.dumps(stats), flush=True)

if __name__ == "__main__":
    main()
