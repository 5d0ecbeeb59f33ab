package netx

// Addr is a TCP address known only as the string another process or a
// proxy gave for it, "192.0.2.1:4000" say, or a name such as "web" where
// there is no address.
type Addr string

// Network returns "tcp".
func (Addr) Network() string { return "tcp" }

func (a Addr) String() string { return string(a) }
