import Logging
import UDPDConfig
import UDPDControl
import UDPDServices
import UDPDTransport

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Supervisor {
    /// Reads the configuration file again and applies it, or changes nothing and says why.
    ///
    /// Everything that can fail happens before anything changes: reading and validating the whole file, building
    /// every handler, binding every new socket. Then listeners whose (protocol, address, port) stays keep their
    /// sockets and only swap handlers, new ones start, and removed ones close, their TCP connections drained for
    /// `grace`.
    ///
    /// Upstream host names are resolved again, off the supervisor, so that status keeps answering meanwhile; a
    /// service whose upstream now resolves elsewhere is rebuilt. Once the stop began, a reload is refused (and one
    /// under way is abandoned before it changes anything).
    public func reload() async -> ReloadReport {
        await beginChange()
        defer { endChange() }
        guard !stopping else { return refuseWhileStopping() }
        let at = Self.timestamp(Date())
        let newConfiguration: Configuration
        do throws(ConfigurationErrors) {
            newConfiguration = try ConfigurationLoader.load(path: configPath)
        } catch {
            return reject(error.errors.map(\.description), at: at)
        }
        let upstreams = await UpstreamResolution.resolve(newConfiguration.services)
        guard !stopping else { return refuseWhileStopping() }
        var newHandlers: [String: ServiceHandlerSet]
        do throws(SupervisorError) {
            newHandlers = try buildHandlers(for: newConfiguration, upstreams: upstreams, previous: handlers)
        } catch {
            return reject(error.messages, at: at)
        }

        do throws(SupervisorError) {
            try refreshAddresses()
            try checkExplicitAddresses(newConfiguration)
        } catch {
            return reject(error.messages, at: at)
        }
        let planned = newConfiguration.plannedListeners(on: host)
        logFallbacks(newConfiguration)
        var plannedKeys: Set<ListenerKey> = []
        plannedKeys.reserveCapacity(planned.count)
        var added: [PlannedListener] = []
        var keptServices: Set<String> = []
        for plan in planned {
            plannedKeys.insert(plan.key)
            if listeners[plan.key] == nil { added.append(plan) } else { keptServices.insert(plan.service) }
        }
        // `workers:` is applied as written or the reload is rejected, never quietly lowered: the threads that the most
        // workers of any listener need start before anything changes (the pool never shrinks, so this is harmless
        // when the reload fails later), and the descriptors of re-created listeners are reserved with the new ones.
        do {
            try pool.grow(to: planned.reduce(1) { max($0, $1.workers) })
        } catch {
            return reject(["cannot start the UDP worker threads that 'workers' asks for: \(error)"], at: at)
        }
        let resizedWorkers = planned.reduce(0) { sum, plan in
            guard let entry = listeners[plan.key], entry.plannedWorkers != plan.workers else { return sum }
            return sum + plan.workers
        }
        let bound: [(PlannedListener, BoundSocket)]
        do throws(SupervisorError) {
            DescriptorTable.reserve(added.reduce(resizedWorkers) { $0 + $1.workers })
            bound = try await bindAll(added, serving: keptServices)
        } catch {
            return reject(error.messages, at: at)
        }
        // The last point where a stop may abandon the reload: from here on it completes, and the stop waits for it.
        guard !stopping else {
            for (_, socket) in bound { socket.close() }
            return refuseWhileStopping()
        }

        // Nothing can fail from here on that would leave the old configuration half-replaced.
        // Services by name, as positions in their configuration: copying a thousand definitions into dictionaries
        // was a visible part of a reload.
        let oldServices = Self.indexByName(configuration.services)
        let newServices = Self.indexByName(newConfiguration.services)
        var changedServices: Set<String> = []
        for (name, newIndex) in newServices {
            guard let oldIndex = oldServices[name] else { continue }
            if configuration.services[oldIndex] != newConfiguration.services[newIndex]
                || !(upstreams[name]?.sameAddress(as: resolvedUpstreams[name]) ?? (resolvedUpstreams[name] == nil))
            {
                changedServices.insert(name)
            }
        }
        if configuration.metrics != newConfiguration.metrics {
            logger.warning(
                "metrics.listen changed: the HTTP endpoint moves only when udpd restarts",
                metadata: [
                    "running": "\(configuration.metrics.map { "\($0.listen)" } ?? "off")",
                    "configured": "\(newConfiguration.metrics.map { "\($0.listen)" } ?? "off")",
                ]
            )
        }
        // An unchanged service keeps the handlers that serve it now, with their state (a forward's sessions), so
        // that status reports them and new listeners of the service share them.
        for name in newServices.keys where oldServices[name] != nil && !changedServices.contains(name) {
            if let running = handlers[name] { newHandlers[name] = running }
        }
        // A changed forward's UDP sessions go to its new handler once that serves (below), never closed by a reload.
        let replacedForwards = changedServices.compactMap { name in
            handlers[name]?.activity.forward.map { (name, $0) }
        }
        handlers = newHandlers
        configuration = newConfiguration
        resolvedUpstreams = upstreams
        pool.setBatchSize(newConfiguration.batchSize)

        var report = ReloadReport(ok: true, generation: generation + 1)
        for key in listeners.keys.filter({ !plannedKeys.contains($0) }).sorted() {
            guard let entry = listeners.removeValue(forKey: key) else { continue }
            retire(entry)
            if let tcp = await entry.listener.stop(pool: pool) { draining.yield(tcp) }
            report.listenersRemoved.append("\(entry.service) \(key)")
            logger.info("listener removed", metadata: ["service": "\(entry.service)", "listener": "\(key)"])
        }
        var resized: [PlannedListener] = []
        for plan in planned {
            guard var entry = listeners[plan.key] else { continue }
            if entry.plannedWorkers != plan.workers {
                resized.append(plan)
                continue
            }
            if entry.service != plan.service || changedServices.contains(plan.service) {
                let moved = await entry.listener.replaceHandlers(with: newHandlers[plan.service]!)
                if let old = moved.draining { draining.yield(old) }
                if let error = moved.error { report.errors.append("service '\(plan.service)': \(error)") }
                entry.service = plan.service
                listeners[plan.key] = entry
            }
            report.listenersKept.append("\(plan.service) \(plan.key)")
        }
        for plan in resized {
            await recreate(plan, report: &report)
        }
        handOverSessions(of: replacedForwards)
        for (plan, socket) in bound {
            do {
                try await startListener(plan, socket: socket)
                report.listenersAdded.append("\(plan.service) \(plan.key)")
            } catch {
                socket.close()
                report.errors.append("service '\(plan.service)': cannot serve \(plan.key): \(error)")
                logger.error("cannot serve a new listener", metadata: ["listener": "\(plan.key)", "error": "\(error)"])
            }
        }
        report.servicesAdded = newConfiguration.services.map(\.name).filter { oldServices[$0] == nil }
        report.servicesRemoved = oldServices.keys.sorted().filter { newServices[$0] == nil }
        report.servicesChanged = newConfiguration.services.map(\.name).filter { changedServices.contains($0) }
        for name in report.servicesRemoved { retiredCounters[name] = nil }
        publishOwnListeners()

        generation += 1
        reloadCounts.applied += 1
        report.generation = generation
        lastReload = ReloadOutcome(ok: true, at: at, errors: report.errors)
        logger.notice(
            "reload applied",
            metadata: [
                "generation": "\(generation)", "added": "\(report.listenersAdded.count)",
                "removed": "\(report.listenersRemoved.count)", "kept": "\(report.listenersKept.count)",
                "changed_services": "\(report.servicesChanged.joined(separator: ","))",
            ]
        )
        // After the switch, not inside it: this may wait for the binder thread.
        await reportTransparentCapability()
        return report
    }

    /// Re-creates a listener whose number of workers changed: its sockets close and new ones bind on the same port
    /// (the port cannot be bound twice), so datagrams queued on the old sockets at that instant are lost. If the new
    /// sockets cannot be bound, the old number is bound again and the failure reported.
    private func recreate(_ plan: PlannedListener, report: inout ReloadReport) async {
        guard let entry = listeners.removeValue(forKey: plan.key) else { return }
        retire(entry)
        _ = await entry.listener.stop(pool: pool)
        var fallback = plan
        fallback.workers = entry.listener.workerCount
        for attempt in [plan, fallback] {
            do {
                try await startListener(attempt, socket: try await bindOnceReleased(attempt))
                if attempt.workers == plan.workers {
                    report.listenersAdded.append("\(plan.service) \(plan.key) (workers: \(plan.workers))")
                    report.listenersRemoved.append("\(entry.service) \(plan.key) (workers: \(fallback.workers))")
                    return
                }
                report.errors.append("service '\(plan.service)': \(plan.key) keeps \(fallback.workers) workers")
                return
            } catch {
                report.errors.append("service '\(plan.service)': cannot re-create \(plan.key): \(error)")
            }
        }
    }

    /// Binds `plan` on the port its old sockets just left, retrying for up to 2 seconds while the port still reads
    /// as in use: a socket closed here is released only when the last reference to it goes, and a child between
    /// fork and execve (an exec service's program started as another user) or a pool thread finishing its pass may
    /// hold one a moment longer. Without the retry a loaded host lost the listener: both the new and the old number
    /// of workers failed to bind (found by RandomConfigurationTests).
    private func bindOnceReleased(_ plan: PlannedListener) async throws(BindError) -> BoundSocket {
        let deadline = ContinuousClock.now + .seconds(2)
        while true {
            do {
                return try await bindSocket(plan)
            } catch where error.code == .addressInUse && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// The position of each service in `services`, by name (the first, should a name repeat).
    private static func indexByName(_ services: [ServiceDefinition]) -> [String: Int] {
        var index: [String: Int] = [:]
        index.reserveCapacity(services.count)
        for position in services.indices where index[services[position].name] == nil {
            index[services[position].name] = position
        }
        return index
    }

    /// Keeps the old configuration, records why, and says so.
    private func reject(_ errors: [String], at: String) -> ReloadReport {
        lastReload = ReloadOutcome(ok: false, at: at, errors: errors)
        reloadCounts.rejected += 1
        logger.error("reload rejected; the old configuration keeps running", metadata: ["errors": "\(errors.count)"])
        for line in errors { logger.error("\(line)") }
        return ReloadReport(ok: false, generation: generation, errors: errors)
    }

    /// Refuses a reload because udpd is stopping; the running configuration is not marked as rejected.
    private func refuseWhileStopping() -> ReloadReport {
        ReloadReport(ok: false, generation: generation, errors: ["udpd is stopping"])
    }

    /// Folds a removed listener's counters into its service's totals.
    /// Its connections still draining are no longer counted as active; a dual-stack socket it had is forgotten.
    func retire(_ entry: Entry) {
        host.dualStack.remove(entry.listener.key)
        var snapshot = entry.listener.counters.snapshot()
        snapshot.tcpActive = 0
        retiredCounters[entry.service] = retiredCounters[entry.service, default: ListenerCountersSnapshot()] + snapshot
    }

    /// `2026-11-26T12:00:00Z`.
    static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
    }
}
