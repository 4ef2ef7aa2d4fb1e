/// The daemon's side of the wire: answers written with ``JSONWriter`` (keys sorted), read back by the `Decodable`
/// conformances of the same types.
///
/// Every key is written through the type's `CodingKeys`, so that it is spelled once, for the writer and the reader
/// alike; the writes stay in the keys' sorted order, as `JSONEncoder` with `.sortedKeys` writes them.
extension ControlProtocol {
    /// Encodes a response as one line of compact JSON with sorted keys, including the trailing newline.
    public static func encodeResponseLine(_ response: ControlResponse) -> [UInt8] {
        var writer = JSONWriter(reservingCapacity: response.status.map { 1024 + $0.services.count * 640 } ?? 512)
        response.write(to: &writer)
        writer.newline()
        return writer.finish()
    }
}

extension ControlResponse {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        if let error {
            writer.key(CodingKeys.error)
            writer.string(error)
        }
        if let metrics {
            writer.key(CodingKeys.metrics)
            writer.string(metrics)
        }
        writer.key(CodingKeys.ok)
        writer.bool(ok)
        if let reload {
            writer.key(CodingKeys.reload)
            reload.write(to: &writer)
        }
        if let status {
            writer.key(CodingKeys.status)
            status.write(to: &writer)
        }
        if let upgrade {
            writer.key(CodingKeys.upgrade)
            writer.beginObject()
            writer.key(UpgradeReport.CodingKeys.pid)
            writer.integer(upgrade.pid)
            writer.key(UpgradeReport.CodingKeys.previousPID)
            writer.integer(upgrade.previousPID)
            writer.endObject()
        }
        writer.key(CodingKeys.version)
        writer.integer(version)
        writer.endObject()
    }
}

extension ReloadReport {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key(CodingKeys.errors)
        writer.strings(errors)
        writer.key(CodingKeys.generation)
        writer.integer(generation)
        writer.key(CodingKeys.listenersAdded)
        writer.strings(listenersAdded)
        writer.key(CodingKeys.listenersKept)
        writer.strings(listenersKept)
        writer.key(CodingKeys.listenersRemoved)
        writer.strings(listenersRemoved)
        writer.key(CodingKeys.ok)
        writer.bool(ok)
        writer.key(CodingKeys.servicesAdded)
        writer.strings(servicesAdded)
        writer.key(CodingKeys.servicesChanged)
        writer.strings(servicesChanged)
        writer.key(CodingKeys.servicesRemoved)
        writer.strings(servicesRemoved)
        writer.endObject()
    }
}

extension StatusReport {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        if let batchSize {
            writer.key(CodingKeys.batchSize)
            writer.integer(batchSize)
        }
        writer.key(CodingKeys.config)
        writer.string(config)
        if let control {
            writer.key(CodingKeys.control)
            writer.beginObject()
            writer.key(ControlSocketCounts.CodingKeys.evictedConnections)
            writer.integer(control.evictedConnections)
            writer.key(ControlSocketCounts.CodingKeys.refusedPeers)
            writer.integer(control.refusedPeers)
            writer.endObject()
        }
        writer.key(CodingKeys.generation)
        writer.integer(generation)
        writer.key(CodingKeys.lastReload)
        if let lastReload {
            writer.beginObject()
            writer.key(ReloadOutcome.CodingKeys.at)
            writer.string(lastReload.at)
            writer.key(ReloadOutcome.CodingKeys.errors)
            writer.strings(lastReload.errors)
            writer.key(ReloadOutcome.CodingKeys.ok)
            writer.bool(lastReload.ok)
            writer.endObject()
        } else {
            writer.null()
        }
        writer.key(CodingKeys.pid)
        writer.integer(pid)
        if let reloads {
            writer.key(CodingKeys.reloads)
            writer.beginObject()
            writer.key(ReloadCounts.CodingKeys.applied)
            writer.integer(reloads.applied)
            writer.key(ReloadCounts.CodingKeys.rejected)
            writer.integer(reloads.rejected)
            writer.endObject()
        }
        writer.key(CodingKeys.services)
        writer.beginArray()
        for service in services { service.write(to: &writer) }
        writer.endArray()
        writer.key(CodingKeys.startedAt)
        writer.string(startedAt)
        writer.key(CodingKeys.upgradedFrom)
        if let upgradedFrom {
            writer.integer(upgradedFrom)
        } else {
            writer.null()
        }
        writer.key(CodingKeys.uptimeSeconds)
        writer.double(uptimeSeconds)
        writer.key(CodingKeys.version)
        writer.string(version)
        writer.endObject()
    }
}

extension ServiceStatus {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        if let bindFallback {
            writer.key(CodingKeys.bindFallback)
            writer.bool(bindFallback)
        }
        writer.key(CodingKeys.counters)
        counters.write(to: &writer)
        if let execInstances {
            writer.key(CodingKeys.execInstances)
            writer.integer(execInstances)
        }
        if let forwardSessions {
            writer.key(CodingKeys.forwardSessions)
            writer.integer(forwardSessions)
        }
        writer.key(CodingKeys.handler)
        writer.string(handler)
        writer.key(CodingKeys.listeners)
        writer.beginArray()
        for listener in listeners { listener.write(to: &writer) }
        writer.endArray()
        writer.key(CodingKeys.name)
        writer.string(name)
        if let upstreams {
            writer.key(CodingKeys.upstreams)
            writer.beginArray()
            for upstream in upstreams { upstream.write(to: &writer) }
            writer.endArray()
        }
        writer.endObject()
    }
}

extension UpstreamStatus {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key(CodingKeys.address)
        writer.string(address)
        writer.key(CodingKeys.failures)
        writer.integer(failures)
        writer.key(CodingKeys.port)
        writer.integer(port)
        writer.key(CodingKeys.probeRoundTripMilliseconds)
        if let probeRoundTripMilliseconds { writer.double(probeRoundTripMilliseconds) } else { writer.null() }
        writer.key(CodingKeys.sessions)
        writer.integer(sessions)
        writer.key(CodingKeys.state)
        writer.string(state)
        writer.endObject()
    }
}

extension ListenerStatus {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key(CodingKeys.address)
        writer.string(address)
        if let counters {
            writer.key(CodingKeys.counters)
            counters.write(to: &writer)
        }
        if let dualStack {
            writer.key(CodingKeys.dualStack)
            writer.bool(dualStack)
        }
        if let interface {
            writer.key(CodingKeys.interface)
            writer.string(interface)
        }
        writer.key(CodingKeys.port)
        writer.integer(port)
        writer.key(CodingKeys.proto)
        writer.string(proto)
        writer.key(CodingKeys.replySource)
        writer.string(replySource)
        writer.endObject()
    }
}

extension ServiceCounters {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key(CodingKeys.dropped)
        writer.integer(dropped)
        writer.key(CodingKeys.drops)
        writer.beginObject()
        for reason in drops.keys.sorted() {
            writer.key(reason)
            writer.integer(drops[reason] ?? 0)
        }
        writer.endObject()
        writer.key(CodingKeys.rxBytes)
        writer.integer(rxBytes)
        writer.key(CodingKeys.rxPackets)
        writer.integer(rxPackets)
        writer.key(CodingKeys.tcpAccepted)
        writer.integer(tcpAccepted)
        writer.key(CodingKeys.tcpActive)
        writer.integer(tcpActive)
        writer.key(CodingKeys.tcpClosed)
        writer.integer(tcpClosed)
        writer.key(CodingKeys.txBytes)
        writer.integer(txBytes)
        writer.key(CodingKeys.txPackets)
        writer.integer(txPackets)
        writer.endObject()
    }
}
