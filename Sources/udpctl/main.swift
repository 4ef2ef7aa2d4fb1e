print("udpctl: not yet built")
