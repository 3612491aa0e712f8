// Error numbers the kernel code returns as -errno (include/uapi/asm-generic/errno-base.h).
// One definition for every file of src/mm and the tools above it.

export const EPERM = 1;
export const EINTR = 4;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EEXIST = 17;
export const EINVAL = 22;

export const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 17: 'EEXIST', 22: 'EINVAL', 4: 'EINTR' };
