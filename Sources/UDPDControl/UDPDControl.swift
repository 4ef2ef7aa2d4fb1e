// The UDPDControl target; its first files arrive in the next commits.
