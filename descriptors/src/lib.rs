//! ETSI SOL001/SOL004/SOL006 VNF packages (issue 7).
