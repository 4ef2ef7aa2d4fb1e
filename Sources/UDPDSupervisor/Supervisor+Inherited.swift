import Logging
import UDPDTransport

extension Supervisor {
    /// Matches the sockets systemd handed over to the planned listeners by protocol, address and port.
    ///
    /// A socket that matches no listener (or a second socket for the same one) is logged and closed: nothing would
    /// ever serve it, and a socket left open would hold its port. The match happens once, at start; a listener a
    /// later reload adds binds its own socket.
    func matchInherited(_ sockets: [InheritedSocket], to planned: [PlannedListener]) -> [ListenerKey: InheritedSocket] {
        let plannedKeys = Set(planned.map(\.key))
        var matched: [ListenerKey: InheritedSocket] = [:]
        for socket in sockets {
            let proto: ListenerProtocol? =
                switch socket.kind {
                case .datagram: .udp
                case .stream: .tcp
                case .other: nil
                }
            if let proto, let endpoint = socket.localEndpoint {
                let key = ListenerKey(proto: proto, endpoint: endpoint)
                if plannedKeys.contains(key) && matched[key] == nil {
                    matched[key] = socket
                    continue
                }
            }
            logger.warning(
                "an inherited socket matches no listener of the configuration; closing it",
                metadata: ["socket": "\(socket)"]
            )
            socket.descriptor.close()
        }
        return matched
    }

    /// Wraps an inherited socket as a planned listener's bound socket.
    ///
    /// UDP: the inherited socket is the first worker. More workers join its port only if it has SO_REUSEPORT
    /// (systemd's `ReusePort=yes`); without it one worker serves the port, and that is logged.
    func adopt(_ inherited: InheritedSocket, for plan: PlannedListener) throws(BindError) -> BoundSocket {
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
            let first = try UDPListenerSocket.adopt(inherited.descriptor, options: plan.options)
            var workers = 1
            var group = [first]
            if plan.workers > 1 && inherited.reusePort {
                do {
                    group += try UDPListenerSocket.join(first, count: plan.workers - 1, options: plan.options)
                    workers = plan.workers
                } catch {
                    first.close()
                    throw error
                }
            } else if plan.workers > 1 {
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
