print("udpd: not yet built")
