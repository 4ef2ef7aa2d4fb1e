/// The version of udpd and udpctl, which status reports and `--version` prints.
public enum UDPDVersion {
    /// The version string.
    public static let string = "0.1.0"
}
