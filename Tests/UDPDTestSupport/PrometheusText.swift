/// A strict reader of the Prometheus text exposition format (0.0.4), for tests: it refuses anything a Prometheus
/// server would refuse, and a few things it would only tolerate, so that a test proves the text scrapes cleanly.
///
/// Refused: blank lines; comments other than `# HELP` and `# TYPE`; a name or label name outside the format's
/// alphabet, or a label name starting with `__`; a label value with an escape other than `\\`, `\"` or `\n`;
/// a label named twice; a value that is not a float (`NaN`, `+Inf`, `-Inf` allowed); a sample before its
/// family's `TYPE` or a family split in two; a `HELP` or `TYPE` given twice; a type other than counter or gauge
/// (udpd has no others); a counter whose name does not end in `_total` or whose value is negative; the same series
/// (name and label set) twice; a missing final newline.
public enum PrometheusText {
    /// One sample line.
    public struct Sample: Sendable, Equatable {
        /// The metric name.
        public var name: String
        /// The labels, by name.
        public var labels: [String: String]
        /// The value.
        public var value: Double
    }

    /// A parsed exposition.
    public struct Exposition: Sendable {
        /// Every sample, in order.
        public var samples: [Sample]
        /// Every family's type (`counter`, `gauge`), by name.
        public var types: [String: String]
        /// Every family's help text, by name.
        public var help: [String: String]

        /// The samples of `name` whose labels include all of `labels`.
        public func samples(_ name: String, _ labels: [String: String] = [:]) -> [Sample] {
            samples.filter { sample in
                sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
            }
        }

        /// The value of the one sample of `name` whose labels are exactly `labels`; `nil` if there is none.
        public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { $0.name == name && $0.labels == labels }?.value
        }
    }

    /// Parses `text`; throws a ``TestFailure`` naming the first offending line.
    public static func parse(_ text: String) throws -> Exposition {
        guard text.isEmpty || text.hasSuffix("\n") else { throw TestFailure("the exposition does not end with \\n") }
        var exposition = Exposition(samples: [], types: [:], help: [:])
        var finished = Set<String>()
        var current: String?
        var series = Set<String>()
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let fail = { (why: String) in TestFailure("line \(index + 1): \(why): \(line)") }
            if line.isEmpty { throw fail("blank line") }
            if line.hasPrefix("#") {
                let words = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
                guard words.count >= 3, words[0] == "#", ["HELP", "TYPE"].contains(words[1]) else {
                    throw fail("a comment other than HELP or TYPE")
                }
                let name = words[2]
                guard isMetricName(name) else { throw fail("bad metric name") }
                if current != name, let current { finished.insert(current) }
                guard !finished.contains(name) else { throw fail("family \(name) is split") }
                current = name
                if words[1] == "HELP" {
                    guard exposition.help[name] == nil else { throw fail("second HELP") }
                    exposition.help[name] = words.count == 4 ? words[3] : ""
                } else {
                    guard words.count == 4, ["counter", "gauge"].contains(words[3]) else { throw fail("bad TYPE") }
                    guard exposition.types[name] == nil else { throw fail("second TYPE") }
                    guard !exposition.samples.contains(where: { $0.name == name }) else {
                        throw fail("TYPE after samples")
                    }
                    exposition.types[name] = words[3]
                }
                continue
            }
            let sample = try parseSample(Substring(line), fail: fail)
            guard let type = exposition.types[sample.name], current == sample.name else {
                throw fail("sample outside its family's TYPE block")
            }
            if type == "counter" {
                guard sample.name.hasSuffix("_total") else { throw fail("counter name without _total") }
                guard sample.value >= 0 || sample.value.isNaN else { throw fail("negative counter") }
            }
            let key =
                sample.name + "{"
                + sample.labels.sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"
            guard series.insert(key).inserted else { throw fail("duplicate series") }
            exposition.samples.append(sample)
        }
        return exposition
    }

    private static func parseSample(_ line: Substring, fail: (String) -> TestFailure) throws -> Sample {
        var rest = line[...]
        let name = String(rest.prefix { $0 != "{" && $0 != " " })
        guard isMetricName(name) else { throw fail("bad metric name") }
        rest = rest.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                let labelName = String(rest.prefix { $0 != "=" })
                guard isLabelName(labelName), !labelName.hasPrefix("__") else { throw fail("bad label name") }
                rest = rest.dropFirst(labelName.count)
                guard rest.hasPrefix("=\"") else { throw fail("label without =\"") }
                rest = rest.dropFirst(2)
                var value = ""
                while true {
                    guard let character = rest.first else { throw fail("unterminated label value") }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\\" {
                        guard let escaped = rest.first else { throw fail("dangling backslash") }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw fail("unknown escape \\\(escaped)")
                        }
                    } else {
                        value.append(character)
                    }
                }
                guard labels.updateValue(value, forKey: labelName) == nil else { throw fail("label named twice") }
                if rest.first == "," {
                    rest = rest.dropFirst()
                } else if rest.first != "}" {
                    throw fail("expected , or } after a label")
                }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { throw fail("no space before the value") }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 1 || (fields.count == 2 && Int64(fields[1]) != nil) else {
            throw fail("bad value or timestamp")
        }
        let valueText = String(fields[0])
        let value: Double
        switch valueText {
        case "NaN": value = .nan
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        default:
            guard let number = Double(valueText), number.isFinite else { throw fail("value is not a float") }
            value = number
        }
        return Sample(name: name, labels: labels, value: value)
    }

    private static func isMetricName(_ name: String) -> Bool {
        name.wholeMatch(of: /[a-zA-Z_:][a-zA-Z0-9_:]*/) != nil
    }

    private static func isLabelName(_ name: String) -> Bool {
        name.wholeMatch(of: /[a-zA-Z_][a-zA-Z0-9_]*/) != nil
    }
}
