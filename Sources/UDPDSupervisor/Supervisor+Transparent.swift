import Logging
import NIOCore
import UDPDConfig
import UDPDTransport

extension Supervisor {
    /// Says, for every `transparent: true` service of the running configuration, whether udpd can make the sockets
    /// it needs (IP_TRANSPARENT takes CAP_NET_RAW), as a warning naming the service and what to do when it cannot.
    /// Called once udpd runs as it will from now on (after a privilege drop) and after every reload; with a binder,
    /// it also fills the binder's stocks of transparent sockets.
    public func reportTransparentCapability() async {
        var checked: [IPFamily: SystemCallError?] = [:]
        for service in configuration.services where service.transparent {
            let addresses = (try? resolvedUpstreams[service.name]?.address.get()) ?? []
            var families: [IPFamily] = []
            for address in addresses {
                let family: IPFamily = address.protocol == .inet6 ? .ipv6 : .ipv4
                if !families.contains(family) { families.append(family) }
            }
            for family in families {
                if checked[family] == nil { checked[family] = .some(await transparentSockets.check(family: family)) }
                guard case .some(.some(let error)) = checked[family] else { continue }
                logger.warning(
                    """
                    transparent: true cannot work: udpd cannot make transparent sockets, so this service's UDP \
                    sessions and TCP relays fail (counted as upstream_error); it needs CAP_NET_RAW, which a udpd \
                    that drops privileges keeps only when the configuration it started with has a transparent service
                    """,
                    metadata: ["service": "\(service.name)", "family": "\(family)", "error": "\(error)"]
                )
            }
        }
    }
}
