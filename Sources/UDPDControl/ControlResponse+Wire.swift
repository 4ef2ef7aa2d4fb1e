/// The daemon's side of the wire: answers written with ``JSONWriter`` (keys sorted), read back by the `Decodable`
/// conformances of the same types.
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
            writer.key("error")
            writer.string(error)
        }
        if let metrics {
            writer.key("metrics")
            writer.string(metrics)
        }
        writer.key("ok")
        writer.bool(ok)
        if let reload {
            writer.key("reload")
            reload.write(to: &writer)
        }
        if let status {
            writer.key("status")
            status.write(to: &writer)
        }
        writer.key("version")
        writer.integer(version)
        writer.endObject()
    }
}

extension ReloadReport {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("errors")
        writer.strings(errors)
        writer.key("generation")
        writer.integer(generation)
        writer.key("listeners_added")
        writer.strings(listenersAdded)
        writer.key("listeners_kept")
        writer.strings(listenersKept)
        writer.key("listeners_removed")
        writer.strings(listenersRemoved)
        writer.key("ok")
        writer.bool(ok)
        writer.key("services_added")
        writer.strings(servicesAdded)
        writer.key("services_changed")
        writer.strings(servicesChanged)
        writer.key("services_removed")
        writer.strings(servicesRemoved)
        writer.endObject()
    }
}

extension StatusReport {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        if let batchSize {
            writer.key("batch_size")
            writer.integer(batchSize)
        }
        writer.key("config")
        writer.string(config)
        writer.key("generation")
        writer.integer(generation)
        writer.key("last_reload")
        if let lastReload {
            writer.beginObject()
            writer.key("at")
            writer.string(lastReload.at)
            writer.key("errors")
            writer.strings(lastReload.errors)
            writer.key("ok")
            writer.bool(lastReload.ok)
            writer.endObject()
        } else {
            writer.null()
        }
        writer.key("pid")
        writer.integer(pid)
        if let reloads {
            writer.key("reloads")
            writer.beginObject()
            writer.key("applied")
            writer.integer(reloads.applied)
            writer.key("rejected")
            writer.integer(reloads.rejected)
            writer.endObject()
        }
        writer.key("services")
        writer.beginArray()
        for service in services { service.write(to: &writer) }
        writer.endArray()
        writer.key("started_at")
        writer.string(startedAt)
        writer.key("uptime_seconds")
        writer.double(uptimeSeconds)
        writer.key("version")
        writer.string(version)
        writer.endObject()
    }
}

extension ServiceStatus {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        if let bindFallback {
            writer.key("bind_fallback")
            writer.bool(bindFallback)
        }
        writer.key("counters")
        counters.write(to: &writer)
        if let execInstances {
            writer.key("exec_instances")
            writer.integer(execInstances)
        }
        if let forwardSessions {
            writer.key("forward_sessions")
            writer.integer(forwardSessions)
        }
        writer.key("handler")
        writer.string(handler)
        writer.key("listeners")
        writer.beginArray()
        for listener in listeners { listener.write(to: &writer) }
        writer.endArray()
        writer.key("name")
        writer.string(name)
        writer.endObject()
    }
}

extension ListenerStatus {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("address")
        writer.string(address)
        if let counters {
            writer.key("counters")
            counters.write(to: &writer)
        }
        if let dualStack {
            writer.key("dual_stack")
            writer.bool(dualStack)
        }
        if let interface {
            writer.key("interface")
            writer.string(interface)
        }
        writer.key("port")
        writer.integer(port)
        writer.key("proto")
        writer.string(proto)
        writer.key("reply_source")
        writer.string(replySource)
        writer.endObject()
    }
}

extension ServiceCounters {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("dropped")
        writer.integer(dropped)
        writer.key("drops")
        writer.beginObject()
        for reason in drops.keys.sorted() {
            writer.key(reason)
            writer.integer(drops[reason] ?? 0)
        }
        writer.endObject()
        writer.key("rx_bytes")
        writer.integer(rxBytes)
        writer.key("rx_packets")
        writer.integer(rxPackets)
        writer.key("tcp_accepted")
        writer.integer(tcpAccepted)
        writer.key("tcp_active")
        writer.integer(tcpActive)
        writer.key("tcp_closed")
        writer.integer(tcpClosed)
        writer.key("tx_bytes")
        writer.integer(txBytes)
        writer.key("tx_packets")
        writer.integer(txPackets)
        writer.endObject()
    }
}
