import Foundation
import UDPDTestSupport
import UDPDTransport

/// `udpd-testclient`: the client end of the network-namespace tests, run inside a client namespace with
/// `ip netns exec NS udpd-testclient ...`. It prints one line and exits 0 when every exchange succeeded.
///
///     udpd-testclient udp ADDRESS PORT [COUNT [INTERVAL_MS [TIMEOUT_MS]]]
///         a connected UDP socket sends COUNT datagrams and waits for each echo
///         prints `udp sent=N received=M`
///     udpd-testclient flood ADDRESS PORT [COUNT [SIZE]]
///         a connected UDP socket sends COUNT datagrams of SIZE bytes as fast as it can and never reads
///         prints `flood sent=N`
///     udpd-testclient tcp ADDRESS PORT [SECONDS]
///         one TCP connection exchanges a line with echo every 100 ms for SECONDS
///         prints `tcp exchanges=N`, or `tcp failed after N exchanges`
///     udpd-testclient forge SOURCE SOURCE_PORT ADDRESS PORT
///         sends one datagram with a forged source through a raw socket (root)
///         prints `forged SOURCE -> ADDRESS`
@main
enum TestClient {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "forge" { forge(Array(arguments.dropFirst())) }
        guard arguments.count >= 3, let port = UInt16(arguments[2]),
            let server = IPEndpoint(address: arguments[1], port: port)
        else {
            fail("usage: udpd-testclient udp|tcp ADDRESS PORT [...]")
        }
        let numbers = arguments.dropFirst(3).compactMap { Int($0) }
        do {
            switch arguments[0] {
            case "udp":
                try udp(
                    server,
                    count: numbers.first ?? 1,
                    interval: numbers.dropFirst().first ?? 0,
                    timeout: numbers.dropFirst(2).first ?? 1000
                )
            case "flood":
                try flood(server, count: numbers.first ?? 1000, size: numbers.dropFirst().first ?? 100)
            case "tcp":
                try tcp(server, seconds: numbers.first ?? 0)
            default:
                fail("unknown mode \(arguments[0])")
            }
        } catch {
            fail("\(arguments[0]) \(server): \(error)")
        }
    }

    static func udp(_ server: IPEndpoint, count: Int, interval: Int, timeout: Int) throws {
        let client = try ConnectedUDPClient(
            from: server.family == .ipv4 ? "0.0.0.0" : "::",
            to: server,
            timeoutMilliseconds: timeout
        )
        var received = 0
        for sequence in 0..<count {
            let message = "seq \(sequence) to \(server)"
            try client.send(message)
            // A late echo of an earlier datagram is skipped, not counted twice.
            while let reply = client.receiveText() {
                if reply == message {
                    received += 1
                    break
                }
            }
            if interval > 0 { usleep(UInt32(interval) * 1000) }
        }
        print("udp sent=\(count) received=\(received)")
        exit(received == count ? 0 : 1)
    }

    static func flood(_ server: IPEndpoint, count: Int, size: Int) throws {
        let client = try ConnectedUDPClient(from: server.family == .ipv4 ? "0.0.0.0" : "::", to: server)
        let payload = [UInt8](repeating: 0x61, count: size)
        var sent = 0
        for _ in 0..<count where (try? client.send(payload)) != nil { sent += 1 }
        print("flood sent=\(sent)")
        exit(0)
    }

    static func tcp(_ server: IPEndpoint, seconds: Int) throws {
        let client = try TCPTestClient(to: server, timeoutMilliseconds: 2000)
        let deadline = ContinuousClock.now + .seconds(seconds)
        var exchanges = 0
        repeat {
            let line = Array("line \(exchanges)\n".utf8)
            try client.send(line)
            guard client.receive(count: line.count) == line else {
                print("tcp failed after \(exchanges) exchanges")
                exit(1)
            }
            exchanges += 1
            usleep(100_000)
        } while ContinuousClock.now < deadline
        print("tcp exchanges=\(exchanges)")
        exit(0)
    }

    static func forge(_ arguments: [String]) -> Never {
        guard arguments.count == 4, let sourcePort = UInt16(arguments[1]), let port = UInt16(arguments[3]),
            let source = IPEndpoint(address: arguments[0], port: sourcePort),
            let destination = IPEndpoint(address: arguments[2], port: port)
        else {
            fail("usage: udpd-testclient forge SOURCE SOURCE_PORT ADDRESS PORT")
        }
        do {
            try ForgedDatagram.send(Array("forged".utf8), from: source, to: destination)
        } catch {
            fail("forge \(source) -> \(destination): \(error)")
        }
        print("forged \(source) -> \(destination)")
        exit(0)
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("udpd-testclient: \(message)\n".utf8))
        exit(2)
    }
}
