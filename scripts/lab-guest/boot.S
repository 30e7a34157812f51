/* Multiboot (v1) entry of the lab guest: the loader leaves us in 32-bit protected mode with
 * flat segments and interrupts off; set a stack and call guest_main(magic, info). */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00000003          /* page-aligned modules, memory information */

    .section .multiboot_header, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .bss
    .align 16
stack_bottom:
    .skip 65536
stack_top:

    .section .text
    .global _start
_start:
    cli
    mov $stack_top, %esp
    push %ebx
    push %eax
    call guest_main
halt:
    hlt
    jmp halt

    .section .note.GNU-stack, "", @progbits
