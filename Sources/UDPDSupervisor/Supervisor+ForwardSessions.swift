import Logging
import UDPDServices

extension Supervisor {
    /// Hands the UDP sessions of each replaced forward handler to its service's new one, now that the new one
    /// serves: sessions whose upstream the service still has carry over with their sockets (the upstream sees the
    /// same client port, and no reply in flight is lost); the others drain, relaying what comes back until idle.
    func handOverSessions(of replaced: [(service: String, handler: ForwardDatagramHandler)]) {
        for (service, old) in replaced {
            guard let new = handlers[service]?.activity.forward, new !== old else { continue }
            let moved = new.takeOver(from: old)
            guard moved.carried + moved.draining > 0 else { continue }
            logger.info(
                "forward sessions handed over",
                metadata: ["service": "\(service)", "carried": "\(moved.carried)", "draining": "\(moved.draining)"]
            )
        }
    }
}
