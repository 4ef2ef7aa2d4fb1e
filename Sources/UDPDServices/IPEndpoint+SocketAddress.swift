import NIOCore
import UDPDTransport

extension IPEndpoint {
    /// The endpoint of a SwiftNIO socket address; `nil` for a Unix-domain address.
    init?(socketAddress: SocketAddress) {
        guard let endpoint = socketAddress.withSockAddr({ address, _ in IPEndpoint(UnsafeRawPointer(address)) })
        else { return nil }
        self = endpoint
    }
}
