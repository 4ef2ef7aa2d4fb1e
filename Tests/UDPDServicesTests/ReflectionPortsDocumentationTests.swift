import Foundation
import Testing
import UDPDServices

/// The refused source ports are spelled once, in ``ReflectionGuard/refusedSourcePorts``; both man pages that list
/// them must list exactly those, so that an operator reading either learns what udpd does.
@Suite("The man pages list the refused reflection ports")
struct ReflectionPortsDocumentationTests {
    static let manDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("man")

    /// The port numbers written in `page` between the line containing `start` and the next line containing `end`,
    /// with parenthesized remarks (`(NetBIOS)`) left out.
    static func documentedPorts(page: String, from start: String, to end: String) throws -> [UInt16] {
        let text = try String(contentsOf: manDirectory.appendingPathComponent(page), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let first = try #require(lines.firstIndex { $0.contains(start) }, "\(page): no line with '\(start)'")
        let last = try #require(
            lines[(first + 1)...].firstIndex { $0.contains(end) },
            "\(page): no line with '\(end)' after '\(start)'"
        )
        var section = lines[(first + 1)..<last].joined(separator: " ")
        while let open = section.firstIndex(of: "("), let close = section[open...].firstIndex(of: ")") {
            section.removeSubrange(open...close)
        }
        return section.split { !$0.isNumber }.compactMap { UInt16($0) }
    }

    @Test("udpd(8) lists exactly ReflectionGuard.refusedSourcePorts")
    func daemonPage() throws {
        let ports = try Self.documentedPorts(
            page: "udpd.8",
            from: "the UDP ports of services that answer whatever",
            to: "nor one from"
        )
        #expect(ports == ReflectionGuard.refusedSourcePorts)
    }

    @Test("udpd.yaml(5) lists exactly ReflectionGuard.refusedSourcePorts")
    func configurationPage() throws {
        let ports = try Self.documentedPorts(
            page: "udpd.yaml.5",
            from: "never answers a datagram whose source port is 0 or one of",
            to: ".Ed"
        )
        #expect(ports == ReflectionGuard.refusedSourcePorts)
    }
}
