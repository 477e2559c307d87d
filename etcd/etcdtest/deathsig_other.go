//go:build !linux

package etcdtest

import "syscall"

func dieWithTest(a *syscall.SysProcAttr) {}
