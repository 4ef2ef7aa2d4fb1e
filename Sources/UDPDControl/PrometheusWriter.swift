/// The type of a Prometheus metric family.
enum MetricType: String {
    case counter, gauge
}

/// Accumulates the lines of a Prometheus text exposition; labels are written in the order given, values escaped.
struct PrometheusWriter {
    private(set) var text = ""

    /// Writes a family's `# HELP` and `# TYPE` lines.
    mutating func family(_ name: String, _ type: MetricType, _ help: String) {
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type.rawValue)\n"
    }

    /// Writes one sample.
    mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: String) {
        sample(name, labels.map { ($0.key, $0.value) }, value)
    }

    /// Writes one sample whose labels were built at run time.
    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
        if labels.isEmpty {
            text += "\(name) \(value)\n"
            return
        }
        let rendered = labels.map { "\($0.0)=\"\(PrometheusExposition.escapeLabelValue($0.1))\"" }
        text += "\(name){\(rendered.joined(separator: ","))} \(value)\n"
    }

    /// Writes a counter family with one sample per service.
    mutating func counter(
        _ name: String,
        _ help: String,
        _ services: [ServiceStatus],
        _ figure: KeyPath<ServiceCounters, UInt64>
    ) {
        family(name, .counter, help)
        for service in services {
            sample(name, ["service": service.name], "\(service.counters[keyPath: figure])")
        }
    }

    /// HELP text escaping: backslash and newline.
    private static func escapeHelp(_ help: String) -> String {
        var escaped = ""
        for character in help {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
