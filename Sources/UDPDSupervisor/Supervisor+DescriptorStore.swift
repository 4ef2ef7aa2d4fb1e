import UDPDTransport

/// What udpd keeps in systemd's descriptor store, so that a change stores only what is new and removes only what
/// went away.
///
/// `Sendable`: a notifier and a dictionary of descriptor numbers.
struct DescriptorStoreRecord: Sendable {
    let notifier: SystemdNotifier
    /// The descriptors stored under each name.
    var stored: [String: [CInt]] = [:]
}

extension Supervisor {
    /// Keeps every listening socket in systemd's descriptor store from now on (when `notifier` says systemd keeps
    /// descriptors for udpd: `$FDSTORE`), so that `systemctl restart` closes none: the restarted udpd adopts them
    /// through `LISTEN_FDS`. Call before ``start()``.
    public func useDescriptorStore(_ notifier: SystemdNotifier) {
        guard notifier.storesDescriptors else { return }
        descriptorStore = DescriptorStoreRecord(notifier: notifier)
    }

    /// Brings the store in line with the listeners after a change: `FDSTORE=1` for a listener that is new (or whose
    /// sockets were replaced), `FDSTOREREMOVE=1` for one that went away. Nothing once the stop began: a stopping
    /// udpd leaves its sockets in the store for the next one.
    func syncDescriptorStore() {
        guard var record = descriptorStore, !stopping else { return }
        var current: [String: [CInt]] = [:]
        for (key, entry) in listeners { current[key.descriptorName] = entry.listener.listeningDescriptors }
        for (name, descriptors) in record.stored where current[name] != descriptors {
            record.notifier.removeStored(name: name)
        }
        for (name, descriptors) in current where record.stored[name] != descriptors {
            record.notifier.store(descriptors, name: name)
        }
        record.stored = current
        descriptorStore = record
    }

    /// Removes from the store a socket udpd was given back but no longer serves (its listener left the
    /// configuration while udpd was down).
    func forgetStoredDescriptor(named name: String) {
        descriptorStore?.notifier.removeStored(name: name)
    }
}
