import Logging
import UDPDTransport

extension Supervisor {
    /// Matches the sockets handed over (by systemd's socket activation or descriptor store, or by the udpd being
    /// upgraded) to the planned listeners by protocol, address, port and interface (SO_BINDTODEVICE).
    ///
    /// Several sockets may match one UDP listener: the workers of a SO_REUSEPORT group, which an upgrade hands over
    /// together, each with the datagrams queued in it; all are adopted. A socket that matches no listener (or a
    /// second one for a TCP listener, or a second descriptor of a socket already matched) is logged and closed:
    /// nothing would ever serve it, and a socket left open would hold its port. The match happens once, at start;
    /// a listener a later reload adds binds its own socket.
    ///
    /// A dual-stack socket (`[::]` without IPV6_V6ONLY, systemd's default `BindIPv6Only=both`) also takes IPv4: it
    /// is adopted only for a service that serves both families on its port (`family: dual`), and then serves them
    /// both; its key goes into ``HostBindings/dualStack`` so that the IPv4 wildcard listener is no longer planned.
    /// For a service of one family it is closed, with a log line saying what to change.
    func matchInherited(
        _ sockets: [InheritedSocket],
        to planned: [PlannedListener]
    ) -> [ListenerKey: [InheritedSocket]] {
        let plannedKeys = Set(planned.map(\.key))
        var matched: [ListenerKey: [InheritedSocket]] = [:]
        var seen: Set<UInt64> = []
        for socket in sockets {
            guard socket.socketInode == 0 || seen.insert(socket.socketInode).inserted else {
                logger.info("a socket was handed over twice; keeping one descriptor", metadata: ["socket": "\(socket)"])
                socket.descriptor.close()
                continue
            }
            let proto: ListenerProtocol? =
                switch socket.kind {
                case .datagram: .udp
                case .stream: .tcp
                case .other: nil
                }
            if let proto, let endpoint = socket.localEndpoint {
                let key = ListenerKey(proto: proto, endpoint: endpoint, device: socket.device)
                if plannedKeys.contains(key) && (matched[key] == nil || proto == .udp) {
                    guard socket.isDualStack else {
                        matched[key, default: []].append(socket)
                        continue
                    }
                    if let service = servesBothFamilies(key, planned) {
                        matched[key, default: []].append(socket)
                        host.dualStack.insert(key)
                        logger.info(
                            "an inherited dual-stack socket serves IPv4 too",
                            metadata: ["service": "\(service)", "socket": "\(socket)"]
                        )
                        continue
                    }
                    let text =
                        "an inherited socket takes IPv4 too (BindIPv6Only=both), but its service does "
                        + "not serve IPv4 on it (family: dual does); closing it: set BindIPv6Only=ipv6-only in the "
                        + "socket unit"
                    logger.warning(
                        "\(text)",
                        metadata: ["socket": "\(socket)"]
                    )
                    socket.descriptor.close()
                    continue
                }
            }
            logger.warning(
                "an inherited socket matches no listener of the configuration; closing it",
                metadata: ["socket": "\(socket)"]
            )
            if let name = socket.name { forgetStoredDescriptor(named: name) }
            socket.descriptor.close()
        }
        return matched
    }

    /// The service planned on IPv6 wildcard `key` if it also plans the IPv4 wildcard listener of the same protocol
    /// and port (with the same device), so that a dual-stack socket on `key` serves what it asked for.
    private func servesBothFamilies(_ key: ListenerKey, _ planned: [PlannedListener]) -> String? {
        guard let service = planned.first(where: { $0.key == key })?.service else { return nil }
        let twin = ListenerKey(
            proto: key.proto,
            endpoint: .wildcard(.ipv4, port: key.endpoint.port),
            device: key.device
        )
        return planned.contains { $0.key == twin && $0.service == service } ? service : nil
    }

    /// Wraps the inherited sockets of one planned listener as its bound socket.
    ///
    /// UDP: every inherited socket is a worker (an upgrade hands over all workers of a port). More workers join the
    /// port, up to the configured number, only if it has SO_REUSEPORT (systemd's `ReusePort=yes`); without it one
    /// worker serves the port, and that is logged.
    func adopt(_ sockets: [InheritedSocket], for plan: PlannedListener) throws(BindError) -> BoundSocket {
        let inherited = sockets[0]
        switch plan.key.proto {
        case .tcp:
            let socket = try TCPListenerSocket.adopt(inherited.descriptor)
            logger.info(
                "adopted an inherited socket",
                metadata: [
                    "service": "\(plan.service)",
                    "socket": "\(inherited)",
                ]
            )
            return .tcp(socket)
        case .udp:
            var group: [UDPListenerSocket] = []
            do {
                for socket in sockets {
                    group.append(try UDPListenerSocket.adopt(socket.descriptor, options: plan.options))
                }
            } catch {
                group.forEach { $0.close() }
                sockets.dropFirst(group.count).forEach { $0.descriptor.close() }
                throw error
            }
            let first = group[0]
            var workers = group.count
            if plan.workers > group.count && inherited.reusePort {
                // Sockets joining a SO_REUSEPORT group must match it, IPV6_V6ONLY included.
                var options = plan.options
                options.dualStack = inherited.isDualStack
                do {
                    group += try UDPListenerSocket.join(first, count: plan.workers - group.count, options: options)
                    workers = plan.workers
                } catch {
                    group.forEach { $0.close() }
                    throw error
                }
            } else if plan.workers > group.count {
                logger.notice(
                    "the inherited socket has no SO_REUSEPORT (ReusePort=yes): one worker serves it",
                    metadata: [
                        "service": "\(plan.service)", "socket": "\(inherited)",
                        "workers_configured": "\(plan.workers)",
                    ]
                )
            }
            logger.info(
                "adopted an inherited socket",
                metadata: [
                    "service": "\(plan.service)", "socket": "\(inherited)", "workers": "\(workers)",
                ]
            )
            return .udp(group)
        }
    }
}
