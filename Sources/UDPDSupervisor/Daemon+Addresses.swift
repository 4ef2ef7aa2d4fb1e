extension Daemon {
    /// Turns every address notification into an address update in the reload queue (one queued at a time).
    func followAddressChanges(requestReload: AsyncStream<ReloadTicket>.Continuation) async {
        for await _ in supervisor.addressChanges {
            await queueAddressUpdate(requestReload)
        }
    }

    /// While some address cannot be bound yet (a tentative IPv6 address in duplicate address detection), queues an
    /// address update every 200 ms, until the supervisor stops asking. Otherwise it sleeps: an idle udpd whose
    /// addresses all bind has no timer waking it.
    func retryUnusableAddresses(requestReload: AsyncStream<ReloadTicket>.Continuation) async {
        for await _ in supervisor.addressRetries {
            while (try? await Task.sleep(for: .milliseconds(200))) != nil, await supervisor.wantsAddressRetry {
                await queueAddressUpdate(requestReload)
            }
        }
    }

    private func queueAddressUpdate(_ requestReload: AsyncStream<ReloadTicket>.Continuation) async {
        guard await supervisor.claimAddressUpdate() else { return }
        requestReload.yield(ReloadTicket(reply: nil, addressesOnly: true))
    }
}
