import UDPDFuzzEntryPoints

/// libFuzzer's entry point: one input, as bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzEntryPoints.der(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
