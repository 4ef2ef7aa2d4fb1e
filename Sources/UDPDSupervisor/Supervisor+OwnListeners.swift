import UDPDTransport

extension Supervisor {
    /// Publishes the UDP listeners serving now, with the host's addresses, to the worker threads, which then never
    /// answer a datagram from any of them (and to forwards, which never open a session towards one).
    ///
    /// Called whenever either changes: at start, after a reload, after an address change.
    func publishOwnListeners() {
        let listening = listeners.keys.filter { $0.proto == .udp }.map(\.endpoint)
        let set = OwnListenerSet(listening: listening, hostAddresses: host.addresses.map(\.endpoint))
        pool.ownListeners.publish(set)
    }
}
