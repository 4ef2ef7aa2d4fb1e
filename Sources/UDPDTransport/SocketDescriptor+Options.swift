import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension SocketDescriptor {
    /// Reads an integer socket option.
    public func option(level: CInt, name: CInt, _ call: @autoclosure () -> String) throws(SystemCallError) -> CInt {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        try systemCall("getsockopt", context: call()) { getsockopt(rawValue, level, name, &value, &length) }
        return value
    }
}
