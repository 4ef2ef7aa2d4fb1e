import ArgumentParser
import UDPDTransport

/// `udpd-bench ports`: prints UDP ports free on the IPv4 wildcard address, for run.sh to hand to the servers.
struct PortsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ports",
        abstract: "Print COUNT UDP ports that are free on 0.0.0.0 right now, one per line."
    )

    @Option(help: "How many ports.")
    var count = 1

    func validate() throws {
        guard count >= 1, count <= 1000 else { throw ValidationError("--count must be 1...1000") }
    }

    func run() throws {
        var held: [UDPListenerSocket] = []
        defer { held.forEach { $0.close() } }
        for _ in 0..<count { held.append(try UDPListenerSocket.bind(.wildcard(.ipv4, port: 0))) }
        for socket in held { print(socket.localEndpoint.port) }
    }
}
