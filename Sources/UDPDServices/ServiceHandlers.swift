import NIOCore
import UDPDConfig
import UDPDTransport

/// A service whose handler udpd cannot build.
public struct ServiceHandlerError: Error, Sendable, CustomStringConvertible {
    /// The service's name.
    public var service: String
    /// Why its handler cannot be built.
    public var message: String

    /// Creates an error.
    public init(service: String, message: String) {
        self.service = service
        self.message = message
    }

    public var description: String { "service '\(service)': \(message)" }
}

/// Builds the handlers that serve a service's UDP and TCP listeners from its definition.
public enum ServiceHandlers {
    /// The handler for the service's UDP listeners, behind the service's ``DatagramPolicy`` when it has one.
    public static func datagramHandler(for service: ServiceDefinition) throws(ServiceHandlerError) -> any DatagramHandler {
        let handler: any DatagramHandler
        switch service.handler {
        case .echo: handler = EchoDatagramHandler()
        case .discard: handler = DiscardDatagramHandler()
        case .forward, .exec:
            throw ServiceHandlerError(service: service.name, message: "handler '\(service.handler)' is not available yet")
        }
        guard let policy = DatagramPolicy(service) else { return handler }
        return DatagramPolicyHandler(policy: policy, inner: handler)
    }

    /// What builds the handlers of each connection accepted by the service's TCP listeners.
    public static func streamFactory(for service: ServiceDefinition) throws(ServiceHandlerError) -> StreamHandlerSlot.Factory {
        switch service.handler {
        case .echo: return { [EchoStreamHandler()] }
        case .discard: return { [DiscardStreamHandler()] }
        case .forward, .exec:
            throw ServiceHandlerError(service: service.name, message: "handler '\(service.handler)' is not available yet")
        }
    }
}
