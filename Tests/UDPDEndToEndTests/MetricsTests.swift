import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// Sends an HTTP/1.1 request for `path` to 127.0.0.1:`port` and returns the status line, headers and body.
func httpGet(
    _ port: UInt16,
    _ path: String,
    method: String = "GET"
) throws -> (
    status: String, headers: String,
    body: String
) {
    let client = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: port)!, timeoutMilliseconds: 5000)
    try client.send("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n")
    let response = String(decoding: client.receive(count: 4 << 20), as: UTF8.self)
    guard let split = response.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP header end in \(response)") }
    let head = response[..<split.lowerBound]
    let status = head.components(separatedBy: "\r\n").first ?? ""  // "\r\n" is one Character: split on strings
    return (status, String(head), String(response[split.upperBound...]))
}

@Suite("Metrics: udpctl metrics and the HTTP /metrics endpoint after known traffic", .serialized)
struct MetricsTests {
    @Test("names, labels and values after known traffic; reloads counted; a removed service's series vanish")
    func metricsAfterKnownTraffic() throws {
        let (echo, sink, http) = (try probeFreePort(), try probeFreePort(), try probeFreePort())
        let yaml = """
            metrics:
              listen: 127.0.0.1:\(http)
            services:
              echo:
                handler: echo
                udp: \(echo)
                tcp: \(echo)
                bind: [127.0.0.1]
              sink:
                handler: discard
                udp: \(sink)
                bind: [127.0.0.1]
            """
        let udpd = try UDPDProcess(config: yaml)
        try udpd.waitUntilReady()

        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: echo)!)
        for index in 0..<5 {
            try client.send("datagram-\(index)")  // 10 bytes each
            #expect(client.receiveText() == "datagram-\(index)")
        }
        let sinkClient = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: sink)!)
        for _ in 0..<3 { try sinkClient.send("four") }
        do {
            let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: echo)!)
            try tcp.send("hello\n")
            #expect(tcp.receive(count: 6) == Array("hello\n".utf8))
        }

        let echoUDP = ["service": "echo", "proto": "udp", "address": "127.0.0.1", "port": "\(echo)"]
        let echoTCP = ["service": "echo", "proto": "tcp", "address": "127.0.0.1", "port": "\(echo)"]
        let sinkUDP = ["service": "sink", "proto": "udp", "address": "127.0.0.1", "port": "\(sink)"]
        var exposition = try PrometheusText.parse("")
        let settled = try eventually(timeout: .seconds(5)) {
            let result = try udpd.udpctl(["metrics"])
            guard result.status == 0 else { throw TestFailure("udpctl metrics: \(result.standardError)") }
            exposition = try PrometheusText.parse(result.standardOutput)
            return exposition.value("udpd_listener_received_packets_total", sinkUDP) == 3
                && exposition.value("udpd_listener_tcp_connections_closed_total", echoTCP) == 1
        }
        #expect(settled, "sink's datagrams and the TCP close were counted")
        #expect(exposition.value("udpd_listener_received_packets_total", echoUDP) == 5)
        #expect(exposition.value("udpd_listener_received_bytes_total", echoUDP) == 50)
        #expect(exposition.value("udpd_listener_sent_packets_total", echoUDP) == 5)
        #expect(exposition.value("udpd_listener_sent_bytes_total", echoUDP) == 50)
        #expect(exposition.value("udpd_listener_received_bytes_total", sinkUDP) == 12)
        #expect(exposition.value("udpd_listener_sent_packets_total", sinkUDP) == 0)
        #expect(exposition.value("udpd_listener_tcp_connections_accepted_total", echoTCP) == 1)
        #expect(exposition.value("udpd_listener_tcp_connections_active", echoTCP) == 0)
        #expect(
            exposition.value("udpd_listener_reply_source", echoUDP.merging(["reply_source": "bound"]) { a, _ in a })
                == 1
        )
        #expect(exposition.value("udpd_listeners", ["service": "echo", "proto": "udp"]) == 1)
        #expect(exposition.value("udpd_received_packets_total", ["service": "sink"]) == 3)
        #expect(exposition.value("udpd_tcp_connections_accepted_total", ["service": "echo"]) == 1)
        #expect(exposition.value("udpd_generation") == 1)
        #expect(exposition.value("udpd_build_info", ["version": "0.1.0", "os": "linux"]) == 1)
        #expect(exposition.value("udpd_reloads_total", ["result": "applied"]) == 0)

        // The HTTP endpoint serves the same exposition.
        let response = try httpGet(http, "/metrics")
        #expect(response.status == "HTTP/1.1 200 OK")
        #expect(response.headers.lowercased().contains("content-type: text/plain; version=0.0.4; charset=utf-8"))
        let scraped = try PrometheusText.parse(response.body)
        #expect(scraped.value("udpd_listener_received_packets_total", echoUDP) == 5)
        #expect(try httpGet(http, "/other").status == "HTTP/1.1 404 Not Found")
        #expect(try httpGet(http, "/metrics", method: "POST").status == "HTTP/1.1 405 Method Not Allowed")

        // A rejected reload, then one that removes sink.
        try udpd.rewriteConfig("services:\n  echo:\n    handler: echo\n    udp: 70000\n")
        #expect(try udpd.udpctl(["reload"]).status == 1)
        try udpd.rewriteConfig(
            yaml.replacingOccurrences(
                of: "  sink:\n    handler: discard\n    udp: \(sink)\n"
                    + "    bind: [127.0.0.1]",
                with: ""
            )
        )
        let reload = try udpd.udpctl(["reload"])
        #expect(reload.status == 0, "\(reload.standardOutput)\(reload.standardError)")
        let after = try PrometheusText.parse(try httpGet(http, "/metrics").body)
        #expect(after.value("udpd_reloads_total", ["result": "applied"]) == 1)
        #expect(after.value("udpd_reloads_total", ["result": "rejected"]) == 1)
        #expect(after.value("udpd_generation") == 2)
        #expect(after.value("udpd_reloads_last_ok") == 1)
        #expect(!after.samples.contains { $0.labels["service"] == "sink" }, "sink's series are gone")
        #expect(after.value("udpd_listener_received_packets_total", echoUDP) == 5, "echo's listener kept its counts")
    }

    @Test("a metrics endpoint whose port is taken stops udpd from starting, exit status 1")
    func metricsPortInUse() throws {
        let (echo, held) = (try probeFreePort(), try probeFreePort())
        let holder = try TCPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: held)!)
        defer { holder.close() }
        let udpd = try UDPDProcess(
            config: """
                metrics: {listen: "127.0.0.1:\(held)"}
                services:
                  echo: {handler: echo, udp: \(echo)}
                """
        )
        #expect(udpd.waitForExit() == 1)
        #expect(udpd.log.contains("metrics endpoint 127.0.0.1:\(held)"), "\(udpd.log)")
    }
}
