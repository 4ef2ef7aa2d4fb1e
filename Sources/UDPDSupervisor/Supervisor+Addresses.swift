import Logging
import UDPDConfig
import UDPDControl
import UDPDTransport

extension Supervisor {
    /// How long binds that fail with EADDRNOTAVAIL are retried before udpd waits for the next address change.
    static let unusableAddressPatience: Duration = .seconds(10)

    /// Starts listening to the kernel's address notifications; without them (a host that refuses the socket)
    /// udpd still binds the addresses it finds at start and at each reload, and says so.
    func startWatchingAddresses() {
        guard addressWatcher == nil else { return }
        let sink = addressChangeSink
        let logger = self.logger
        do {
            addressWatcher = try AddressWatcher { change in
                logger.info("address change", metadata: ["change": "\(change)"])
                sink.yield(change)
            }
        } catch {
            logger.warning(
                "cannot watch address changes; per-address listeners follow addresses only at reload",
                metadata: ["error": "\(error)"]
            )
        }
    }

    /// Warns about every wildcard service whose UDP ports are served per address for want of pktinfo.
    func logFallbacks(_ configuration: Configuration) {
        for service in configuration.services where service.fallsBack(on: host) {
            logger.warning(
                """
                wildcard UDP sockets cannot learn destination addresses here (no IP_PKTINFO/IP_RECVDSTADDR): serving \
                the service per address instead, following address changes
                """,
                metadata: ["service": "\(service.name)", "bind_fallback": "true"]
            )
        }
    }

    /// Reads the host's addresses again.
    func refreshAddresses() throws(SupervisorError) {
        do {
            host.addresses = try InterfaceAddresses.current()
        } catch {
            throw SupervisorError(messages: ["cannot list the host's addresses: \(error)"])
        }
    }

    /// Reports, at its position in the file, every explicit `bind:` address that is not configured on the host (or
    /// not on one of the service's `interfaces`), unless the service has `freebind: true`. Addresses that running
    /// listeners are already bound to pass: their sockets stay bound whatever happened to the address since.
    func checkExplicitAddresses(_ configuration: Configuration) throws(SupervisorError) {
        let running = Set(
            listeners.keys.map { key in
                var endpoint = key.endpoint
                endpoint.port = 0
                return endpoint
            }
        )
        var problems: [String] = []
        for service in configuration.services where !service.freebind {
            guard case .addresses(let addresses) = service.bind else { continue }
            for address in addresses {
                let position = address.position.map { ":\($0)" } ?? ":\(service.position)"
                let prefix = "\(configuration.file)\(position): error: service '\(service.name)': "
                guard let endpoint = IPEndpoint(address: address.text, port: 0) else {
                    problems.append(prefix + "the interface of '\(address.text)' does not exist on this host")
                    continue
                }
                if running.contains(endpoint) { continue }
                let holders = host.addresses.filter { $0.endpoint == endpoint }
                if holders.isEmpty && !InterfaceAddresses.isBindable(endpoint) {
                    problems.append(
                        prefix + "\(address.text) is not configured on this host; add 'freebind: true' "
                            + "to bind it anyway (a failover address, or one that appears after udpd starts)"
                    )
                } else if !holders.isEmpty, !service.interfaces.isEmpty,
                    !holders.contains(where: { service.interfaces.contains($0.interface) })
                {
                    let on = holders.map(\.interface).joined(separator: ", ")
                    problems.append(
                        prefix + "\(address.text) is on \(on), not on any of 'interfaces' "
                            + "(\(service.interfaces.joined(separator: ", ")))"
                    )
                }
            }
        }
        guard problems.isEmpty else { throw SupervisorError(messages: problems) }
    }

    /// Remembers that a listener's address cannot be bound yet, so that binding it is retried soon.
    func noteUnusableAddress(_ plan: PlannedListener, error: BindError) {
        logger.info(
            "address not usable yet (tentative?); retrying",
            metadata: [
                "service": "\(plan.service)", "listener": "\(plan.key)",
            ]
        )
        if addressRetryDeadline == nil {
            addressRetryDeadline = .now + Self.unusableAddressPatience
            addressRetrySink.yield()
        }
    }

    /// Whether some bind failed with EADDRNOTAVAIL and is still being retried.
    public var wantsAddressRetry: Bool { addressRetryDeadline != nil }

    /// Follows the host's addresses until the supervisor stops: each notification of the address watcher (a burst
    /// is one) becomes an address update, and while some address cannot be bound yet (a tentative IPv6 address in
    /// duplicate address detection) an update runs every 200 ms until the supervisor stops asking. Otherwise it
    /// sleeps: an idle udpd whose addresses all bind has no timer waking it.
    ///
    /// The path is direct, watcher to supervisor; an update takes the supervisor's turn like a reload, so the two
    /// never interleave.
    public nonisolated func followAddressChanges() async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await _ in self.addressChanges { _ = await self.followAddresses() }
            }
            group.addTask {
                for await _ in self.addressRetries {
                    while (try? await Task.sleep(for: .milliseconds(200))) != nil, await self.wantsAddressRetry {
                        _ = await self.followAddresses()
                    }
                }
            }
        }
    }

    /// Applies the host's addresses now to the running configuration: binds and starts the listeners of new
    /// addresses, closes those of removed ones (their TCP connections drained as at reload), and touches nothing
    /// else. The configuration is not read again and the generation stays.
    ///
    /// Takes the supervisor's turn, so it never interleaves with a reload; does nothing once the stop began.
    public func followAddresses() async -> ReloadReport {
        await beginChange()
        defer { endChange() }
        var report = ReloadReport(ok: true, generation: generation)
        guard !stopping else { return report }
        do throws(SupervisorError) {
            try refreshAddresses()
        } catch {
            logger.error("cannot follow address changes", metadata: ["error": "\(error)"])
            return ReloadReport(ok: false, generation: generation, errors: error.messages)
        }
        let planned = configuration.plannedListeners(on: host)
        let plannedKeys = Set(planned.map(\.key))
        for key in listeners.keys.sorted() where !plannedKeys.contains(key) {
            guard let entry = listeners.removeValue(forKey: key) else { continue }
            retire(entry)
            if let tcp = await entry.listener.stop(pool: pool) { draining.yield(tcp) }
            report.listenersRemoved.append("\(entry.service) \(key)")
            logger.info(
                "listener removed: its address is gone",
                metadata: [
                    "service": "\(entry.service)", "listener": "\(key)",
                ]
            )
        }
        var unusable = false
        for plan in planned where plan.followsAddresses && listeners[plan.key] == nil {
            let socket: BoundSocket
            do {
                socket = try await bindSocket(plan)
            } catch  where error.code == .addressNotAvailable {
                noteUnusableAddress(plan, error: error)
                unusable = true
                continue
            } catch {
                report.errors.append("service '\(plan.service)': \(error)")
                logger.error(
                    "cannot bind a new address",
                    metadata: ["service": "\(plan.service)", "error": "\(error)"]
                )
                continue
            }
            do {
                try await startListener(plan, socket: socket)
                report.listenersAdded.append("\(plan.service) \(plan.key)")
            } catch {
                socket.close()
                report.errors.append("service '\(plan.service)': cannot serve \(plan.key): \(error)")
            }
        }
        updateRetryDeadline(unusable: unusable)
        publishOwnListeners()
        report.ok = report.errors.isEmpty
        if !report.listenersAdded.isEmpty || !report.listenersRemoved.isEmpty {
            logger.notice(
                "addresses followed",
                metadata: [
                    "added": "\(report.listenersAdded.count)", "removed": "\(report.listenersRemoved.count)",
                ]
            )
        }
        return report
    }

    private func updateRetryDeadline(unusable: Bool) {
        guard unusable else {
            addressRetryDeadline = nil
            return
        }
        if let deadline = addressRetryDeadline, deadline < .now {
            logger.warning(
                """
                an address stays unusable (failed duplicate address detection?); binding it is retried at the next \
                address change
                """
            )
            addressRetryDeadline = nil
        }
    }
}
