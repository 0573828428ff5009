# Writes OUT, a C file defining `const char NAME[]` with the bytes of IN and a closing NUL.
# cmake -DIN=kernel.cu -DOUT=kernel.c -DNAME=symbol -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "/* generated from ${IN} by cuda/embed.cmake */\nconst char ${NAME}[] = {\n${bytes}0x00};\n")
