import UDPDConfig

extension ReloadReport {
    /// What `udpctl reload` prints, ending with a newline.
    ///
    /// Applied: `reload applied: generation N`, then one line per service added, removed or changed and per
    /// listener added or removed, then `kept N listeners`, then `error: ...` for each part that could not be applied
    /// (a listener that could not be re-created). Rejected: `reload rejected; the old configuration keeps
    /// running:` and each error on its own line, unindented, so `FILE:LINE:COLUMN: error:` stays parseable. Every
    /// item is escaped (``TextEscaping``): one item is one line, with no terminal control in it.
    public var text: String {
        linesUnescaped.map { TextEscaping.escaped($0) }.joined(separator: "\n") + "\n"
    }

    private var linesUnescaped: [String] {
        guard ok else {
            var lines = ["reload rejected; the old configuration keeps running:"]
            lines.append(contentsOf: errors.isEmpty ? ["(the daemon gave no reason)"] : errors)
            return lines
        }
        var lines = ["reload applied: generation \(generation)"]
        lines.append(contentsOf: servicesAdded.map { "added service \($0)" })
        lines.append(contentsOf: servicesRemoved.map { "removed service \($0)" })
        lines.append(contentsOf: servicesChanged.map { "changed service \($0)" })
        lines.append(contentsOf: listenersAdded.map { "added listener \($0)" })
        lines.append(contentsOf: listenersRemoved.map { "removed listener \($0)" })
        lines.append("kept \(listenersKept.count) listener\(listenersKept.count == 1 ? "" : "s")")
        // What was applied only in part (a listener that could not be re-created) must not go unsaid.
        lines.append(contentsOf: errors.map { "error: \($0)" })
        return lines
    }
}
