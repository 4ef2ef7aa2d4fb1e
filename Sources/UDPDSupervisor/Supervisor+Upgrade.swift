import Logging
import NIOCore
import NIOPosix
import UDPDServices
import UDPDTransport

extension Supervisor {
    /// Starts the new udpd of an upgrade with every listening socket, plus `extra` descriptors (the metrics
    /// endpoint), and waits up to `deadline` until it serves. Nothing changes here whatever the outcome: on success
    /// the caller stops with ``handOver(grace:)``; on failure the new process is gone and this one serves on.
    ///
    /// The change turn is held meanwhile, so that no reload or address update opens or closes a listener while the
    /// new process is given the sockets; the start and the wait run on SwiftNIO's blocking pool, so that status
    /// answers meanwhile. After success every later reload and address update is refused: this process is leaving.
    ///
    /// Refused once privileges were dropped (`user:`): the new process would inherit the dropped credentials.
    public func upgrade(
        executable: String,
        arguments: [String],
        extra: [HandedOverDescriptor],
        environment: [String: String],
        deadline: Duration
    ) async -> Result<pid_t, UpgradeFailure> {
        guard !stopping else { return .failure(UpgradeFailure("udpd is stopping")) }
        guard binder == nil else {
            return .failure(
                UpgradeFailure(
                    "udpd dropped its privileges (user:): a new udpd it starts would run without them, unable to "
                        + "bind ports below 1024 or start programs as their users; restart udpd instead (under "
                        + "systemd with FileDescriptorStoreMax=, a restart keeps every socket open)"
                )
            )
        }
        await beginChange()
        defer { endChange() }
        guard !stopping else { return .failure(UpgradeFailure("udpd is stopping")) }
        let descriptors = handedOverSockets() + extra
        logger.notice(
            "upgrade: starting a new udpd with every listening socket",
            metadata: ["executable": "\(executable)", "descriptors": "\(descriptors.count)"]
        )
        let outcome: Result<pid_t, UpgradeFailure>
        do {
            outcome = try await NIOThreadPool.singleton.runIfActive {
                UpgradeSpawn.start(
                    executable: executable,
                    arguments: arguments,
                    descriptors: descriptors,
                    environment: environment,
                    deadline: deadline
                )
            }
        } catch {
            outcome = .failure(UpgradeFailure("cannot start the new udpd: \(error)"))
        }
        if case .success = outcome { stopping = true }
        return outcome
    }

    /// Every listening socket, named for `LISTEN_FDNAMES`: all worker sockets of each UDP port (each holds its own
    /// queued datagrams), and each TCP socket.
    func handedOverSockets() -> [HandedOverDescriptor] {
        listeners.sorted { $0.key < $1.key }.flatMap { key, entry in
            let name = key.descriptorName
            return entry.listener.listeningDescriptors.map { HandedOverDescriptor(name: name, descriptor: $0) }
        }
    }

    /// The old udpd's stop after an upgrade: the new one serves every socket already.
    ///
    /// UDP listeners leave the worker threads without being closed until the end (the datagrams queued in them are
    /// read by the new udpd, which shares each socket); TCP listeners stop accepting (connections still in the
    /// accept queue are the new udpd's). Open TCP connections, forward sessions (whose replies come back through
    /// this process's session sockets and leave through its copy of the listening socket) and exec programs get
    /// `grace` to finish; then everything closes, as ``stopAll(grace:)`` does, without telling systemd anything.
    public func handOver(grace: Duration) async {
        stopping = true
        await beginChange()
        defer { endChange() }
        logger.notice(
            "upgrade: the new udpd serves; no longer reading, finishing connections and sessions",
            metadata: ["listeners": "\(listeners.count)", "grace": "\(grace)"]
        )
        var registrations: [UDPPoolRegistration] = []
        var connections: [TCPListener] = []
        for entry in listeners.values {
            switch entry.listener.serving {
            case .udp(_, let registration, _):
                registrations.append(registration)
            case .tcp:
                if let listener = await entry.listener.stop(pool: pool) { connections.append(listener) }
            }
        }
        pool.remove(registrations)
        let activities = handlers.values.map(\.activity)
        let deadline = ContinuousClock.now + grace
        await withTaskGroup(of: Void.self) { group in
            for listener in connections {
                group.addTask { await listener.closeConnections(after: grace) }
            }
            group.addTask {
                while activities.contains(where: \.isBusy), ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
        }
        pool.shutdown()
        for entry in listeners.values {
            if case .udp(let sockets, _, _) = entry.listener.serving { sockets.forEach { $0.close() } }
        }
        listeners = [:]
        handlers = [:]
        addressWatcher?.stop()
        addressWatcher = nil
        addressChangeSink.finish()
        addressRetrySink.finish()
        draining.finish()
        logger.notice("upgrade: this udpd is done")
    }
}

extension ServiceActivity {
    /// Whether forward sessions or programs are still open.
    fileprivate var isBusy: Bool {
        (forwardSessions ?? 0) > 0 || (execInstances?() ?? 0) > 0
    }
}

extension RunningListener {
    /// The listener's sockets: every worker of a UDP port, or the TCP socket.
    var listeningDescriptors: [CInt] {
        switch serving {
        case .udp(let sockets, _, _): sockets.map(\.descriptor.rawValue)
        case .tcp(let tcp): [tcp.socket.descriptor.rawValue]
        }
    }
}

extension ListenerKey {
    /// The socket's `LISTEN_FDNAMES` / `FDNAME=` name
    /// (see ``SocketActivation/descriptorName(proto:endpoint:device:)``).
    var descriptorName: String {
        SocketActivation.descriptorName(proto: proto.rawValue, endpoint: endpoint, device: device)
    }
}
