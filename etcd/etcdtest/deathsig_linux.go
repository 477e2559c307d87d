package etcdtest

import "syscall"

// dieWithTest makes Linux kill the member when the test process dies (a
// test binary killed by go test's timeout runs no cleanup), so no etcd is
// left behind holding its ports and temporary directory.
func dieWithTest(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
